"""Scale-out: Procrastinate app and tasks over the store's PostgreSQL database (optional extra ``workers``)."""
