"""How the exporter's view of the tasks is brought up to date: the listings and who runs them."""
