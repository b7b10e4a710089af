"""Selection policies: DaSH and the flat baselines, all with ask/tell."""
