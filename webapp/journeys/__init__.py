from webapp.journeys.views import bp

__all__ = ["bp"]
