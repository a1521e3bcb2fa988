"""Exercises for this chapter (filled in by the chapter's notebook work)."""
EXERCISES = []
