"""A user's pictures: finding the files, decoding them, making a digit look like MNIST. No torch here."""
