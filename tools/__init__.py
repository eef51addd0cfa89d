"""Tools that write generated files of the repository from their sources."""
