"""The dashboard page the API serves at ``/dashboard`` (server-rendered, works offline)."""
