from webapp.warehouse.views import bp

__all__ = ["bp"]
