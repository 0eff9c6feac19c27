"""The annotation web app (`app.create_app`)."""
