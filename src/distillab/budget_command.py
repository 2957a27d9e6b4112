"""``distillab budget``: distillation FLOPs against pre-training the student, and what serving pays back.

A thin wrapper over :func:`distillab.budget.estimate`. Every number is read as text and checked in
the handler, so bad input (negative, zero, non-finite, a missing folder, a folder without
config.json) is one line on stderr and exit code 2. Nothing heavy is imported at module level.

Examples::

    distillab budget --teacher-params 70e9 --student-params 8e9 --tokens 20e9 --pretrain-tokens 2e12
    distillab budget --teacher models/teacher --student models/student --tokens 1e9 --json
    distillab budget --teacher-params 70B --student-params 8B --tokens 20B \\
        --capture-rows-per-s 40 --tokens-per-row 512 --student-step-s 1.2 --tokens-per-step 1M --devices 8 \\
        --teacher-ms-per-request 900 --student-ms-per-request 120 --price-per-device-hour 2.5
"""

from __future__ import annotations

import json

DESCRIPTION = (
    "Distillation compute against pre-training the student: tokens x (2*N_teacher + 6*N_student) FLOPs "
    "(teacher forward only, student forward + backward) vs pretrain_tokens x 6*N_student, with N the "
    "NON-EMBEDDING parameters (embedding lookups are memory reads, not matmuls; an LM head tied to the "
    "embedding is still a d x V matmul and is counted). Sizes are numbers (70e9, 8B) or model folders, "
    "counted from config.json on the meta device and the safetensors headers, never loading the weights. "
    "Optional measurements (capture rows/s, student step time, serving ms per request, price per "
    "device-hour) give device-hours, cost per million requests and the break-even request count."
)


def register(subparsers) -> None:
    p = subparsers.add_parser("budget", help="distillation FLOPs and cost vs pre-training; serving break-even",
                              description=DESCRIPTION)
    size = p.add_argument_group("model sizes (one of each pair)")
    size.add_argument("--teacher-params", metavar="N", help="teacher non-embedding parameters, e.g. 70e9 or 70B")
    size.add_argument("--teacher", metavar="DIR", help="teacher model folder (config.json [+ *.safetensors])")
    size.add_argument("--student-params", metavar="N", help="student non-embedding parameters, e.g. 8e9 or 8B")
    size.add_argument("--student", metavar="DIR", help="student model folder")
    p.add_argument("--tokens", metavar="D", help="distillation tokens (required), e.g. 20e9 or 20B")
    p.add_argument("--pretrain-tokens", metavar="D", help="tokens to pre-train the student on, for the ratio (e.g. 2T)")
    run = p.add_argument_group("measured run (optional)")
    run.add_argument("--capture-rows-per-s", metavar="R", help="teacher capture throughput, rows/s (with --tokens-per-row)")
    run.add_argument("--tokens-per-row", metavar="L", help="tokens per cached row")
    run.add_argument("--student-step-s", metavar="S", help="student optimizer step time in seconds (with --tokens-per-step)")
    run.add_argument("--tokens-per-step", metavar="B", help="tokens per student optimizer step")
    run.add_argument("--devices", metavar="N", default="1", help="devices the measured rates ran on (default 1)")
    run.add_argument("--device-flops", metavar="F", help="peak FLOP/s of one device: estimates a part with no measurement")
    run.add_argument("--mfu", metavar="U", help="model FLOPs utilisation for --device-flops estimates (default 0.4)")
    serve = p.add_argument_group("serving (optional)")
    serve.add_argument("--teacher-ms-per-request", metavar="MS", help="teacher serving cost, device-ms per request")
    serve.add_argument("--student-ms-per-request", metavar="MS", help="student serving cost, device-ms per request")
    serve.add_argument("--price-per-device-hour", metavar="P", help="price of one device-hour (any currency)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run_budget)


def run_budget(args) -> int:
    from distillab.budget import estimate, format_budget
    from distillab.errors import InputError

    if args.tokens is None:
        raise InputError("--tokens D is required (the number of distillation tokens, e.g. 20e9)")
    result = estimate(
        tokens=args.tokens, teacher_params=args.teacher_params, student_params=args.student_params,
        teacher_dir=args.teacher, student_dir=args.student, pretrain_tokens=args.pretrain_tokens,
        capture_rows_per_s=args.capture_rows_per_s, tokens_per_row=args.tokens_per_row,
        student_step_s=args.student_step_s, tokens_per_step=args.tokens_per_step, devices=args.devices,
        device_flops=args.device_flops, mfu=args.mfu, teacher_ms_per_request=args.teacher_ms_per_request,
        student_ms_per_request=args.student_ms_per_request, price_per_device_hour=args.price_per_device_hour,
    )
    print(json.dumps(result, indent=2, allow_nan=False) if args.json else format_budget(result))
    return 0
