"""What a model is: build, load, train, evaluate, and the registry of trained ones."""
