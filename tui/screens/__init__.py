"""One module per screen of the localpers app: unlock, write, recommend, history, adapter, privacy, help."""
