from autoorg.cli import main

raise SystemExit(main())
