from serval.cli.main import main

raise SystemExit(main())
