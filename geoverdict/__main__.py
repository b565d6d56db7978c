from geoverdict.cli import main

raise SystemExit(main())
