"""Where uploaded exports are kept (issue 10: placeholder until it lands)."""
