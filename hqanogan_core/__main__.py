from hqanogan_core.cli import main

raise SystemExit(main())
