from webapp.dashboard.views import bp

__all__ = ["bp"]
