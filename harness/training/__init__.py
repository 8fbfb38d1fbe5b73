"""The tools a run's steps use inside the training process: the loop, memory meters, energy."""
