from testhosts.cli import main

raise SystemExit(main())
