from webapp.ledger.views import bp

__all__ = ["bp"]
