"""The smallest version of the embedded digits demo that still trains: 8 x 8 images, a two-block
CNN, 16-d embeddings, 10 classes x 4 images a batch, 30% of the images held out. Test files
extend it with their own step counts, metrics and methods."""

TINY_DEMO = [
    "data.image_size=8",
    "data.options.test_fraction=0.3",
    "model.options.widths=[8, 16]",
    "data.batch_size=40",
    "data.m=4",
    "model.embedding_dim=16",
]
