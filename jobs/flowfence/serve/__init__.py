"""`flowfence serve`: a local web application over an output directory (policies, report.json,
state, decisions.yaml) to review recommendations in a browser and record decisions."""
