"""``python -m examples.fastapi_shop``: the FastAPI shop under uvicorn on 127.0.0.1:8001 (``SHOP_PORT``)."""

from examples.fastapi_shop import main

raise SystemExit(main())
