"""The paper's downstream models (ConvNet, VGG19, ResNet18/50, FedAudio conv+GRU) in one registry.

``registry.build_model(name, num_classes, **options)`` builds any of them;
``config.ModelConfig`` is the ``model`` config section and ``config.build_from_config`` its
builder. Nothing is imported here, so that reading the config section does not pull in torch.
"""
