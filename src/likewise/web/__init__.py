"""Static files of the web explorer (served by likewise.server.explorer)."""
