"""The FastAPI example shop: ``uvicorn fastapi_shop.main:app --app-dir example_projects``."""
