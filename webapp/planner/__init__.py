from webapp.planner.views import bp

__all__ = ["bp"]
