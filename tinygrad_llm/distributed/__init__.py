"""Training on several processes with MPI (chapter 10)."""
