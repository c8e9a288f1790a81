from directlb.cli import main

raise SystemExit(main())
