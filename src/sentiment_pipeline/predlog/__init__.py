"""The prediction log (SQLAlchemy: SQLite or PostgreSQL): serving writes it, monitoring and the
dashboard read it, without importing one another."""
