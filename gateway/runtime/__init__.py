"""The process's life: the app and its resources, listening, reload, serving, workers."""
