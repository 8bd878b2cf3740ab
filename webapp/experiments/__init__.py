from webapp.experiments.views import bp

__all__ = ["bp"]
