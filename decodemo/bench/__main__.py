from decodemo.bench.suite import main

raise SystemExit(main())
