from webapp.review.views import bp

__all__ = ["bp"]
