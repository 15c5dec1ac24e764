"""Runnable examples of lexigram-tasks in other frameworks."""
