"""Reports of a study: the report model, its HTML / Markdown / terminal renderers and the figures."""
