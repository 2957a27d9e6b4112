from distillab.cli import main

raise SystemExit(main())
