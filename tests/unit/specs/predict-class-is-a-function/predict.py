def Model(model_uri):
    return model_uri
