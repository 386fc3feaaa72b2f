class Scale:
    def transform_input(self, X, features_names=None):
        return X


class Average:
    def aggregate(self, Xs, features_names=None):
        return Xs[0]


class Pick:
    def route(self, X, features_names=None):
        return 0


class Label:
    def predict(self, X, features_names=None):
        return X


class Finish:
    def transform_output(self, X, features_names=None):
        return X
