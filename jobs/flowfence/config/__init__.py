"""Configuration: a Calico PolicyRecommendationScope plus flowfence's own settings file."""
