class Model:
    def __init__(self, model_uri):
        self.model_uri = model_uri
