from numformer.cli import main

raise SystemExit(main())
