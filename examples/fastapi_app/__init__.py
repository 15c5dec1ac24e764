"""A FastAPI app that enqueues jobs for lexigram-tasks workers."""
