import subprocess
import sys


def test_audit_path_imports_no_heavy_libraries():
    """The audit needs numpy/scipy only; torch, sklearn, matplotlib or transformers would cost seconds."""
    code = (
        "import sys, distillab.cli, distillab.audit.core, distillab.audit.command, distillab.calibrate.run\n"
        "heavy = [m for m in ('torch', 'sklearn', 'matplotlib', 'transformers', 'datasets') if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
