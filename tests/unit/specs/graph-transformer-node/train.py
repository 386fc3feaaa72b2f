def train(X, y, params):
    return None
