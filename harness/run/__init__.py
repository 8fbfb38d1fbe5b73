"""One run inside the training process: its steps (set up, train, test, time), the row it records, data-parallel and FSDP."""
