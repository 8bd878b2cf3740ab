from webapp.results.views import bp

__all__ = ["bp"]
