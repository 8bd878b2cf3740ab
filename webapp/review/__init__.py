from webapp.review import action_views  # noqa: F401  (routes on the same blueprint)
from webapp.review.views import bp

__all__ = ["bp"]
