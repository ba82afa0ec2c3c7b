"""A Wildlife Insights host for deepfaune-plugin (entry point: `deepfaune_wildlife_insights.host`)."""
