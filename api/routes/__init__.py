"""Router factories, each mountable on a bare FastAPI app."""
