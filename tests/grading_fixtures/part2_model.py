"""Questions 2.3 and 2.4 as a student's part2/model.py: our LSTM and text model (part2.model), template-shaped.

Plain autograd instead of our hand-written backward pass, and ``sample`` re-runs
the prefix (the template's ``forward`` takes no state). Read as text by the
test builder, which replaces the template's classes with these.
"""

import math

import torch
import torch.nn as nn


class LSTM(nn.Module):
    def __init__(self, lstm_hidden_dim, embedding_size):
        super().__init__()
        self.hidden_dim = lstm_hidden_dim
        self.embed_dim = embedding_size
        # Gate blocks of 4H rows in the order (i, f, o, g), as in part2.model.
        self.weight_x = nn.Parameter(torch.empty(4 * lstm_hidden_dim, embedding_size))
        self.weight_h = nn.Parameter(torch.empty(4 * lstm_hidden_dim, lstm_hidden_dim))
        self.bias = nn.Parameter(torch.empty(4 * lstm_hidden_dim))
        self.init_parameters()

    def init_parameters(self):
        bound = 1.0 / math.sqrt(self.hidden_dim)
        with torch.no_grad():
            for parameter in self.parameters():
                parameter.uniform_(-bound, bound)
            self.bias[self.hidden_dim : 2 * self.hidden_dim] += 1.0

    def forward(self, embeds):
        T, B, _ = embeds.shape
        H = self.hidden_dim
        h = embeds.new_zeros(B, H)
        c = embeds.new_zeros(B, H)
        projected = embeds @ self.weight_x.t() + self.bias
        outputs = []
        for t in range(T):
            gates = projected[t] + h @ self.weight_h.t()
            i, f, o = torch.sigmoid(gates[:, : 3 * H]).chunk(3, dim=1)
            g = torch.tanh(gates[:, 3 * H :])
            c = g * i + c * f
            h = torch.tanh(c) * o
            outputs.append(h)
        return torch.stack(outputs)


class TextGenerationModel(nn.Module):
    def __init__(self, args):
        super().__init__()
        self.vocabulary_size = args.vocabulary_size
        self.embedding = nn.Embedding(args.vocabulary_size, args.embedding_size)
        self.lstm = LSTM(args.lstm_hidden_dim, args.embedding_size)
        self.output = nn.Linear(args.lstm_hidden_dim, args.vocabulary_size)

    def forward(self, x):
        return self.output(self.lstm(self.embedding(x)))

    @torch.no_grad()
    def sample(self, batch_size=4, sample_length=30, temperature=0.0):
        samples = torch.randint(self.vocabulary_size, (1, batch_size))
        for _ in range(sample_length - 1):
            next_logits = self(samples)[-1]
            if temperature == 0:
                next_char = next_logits.argmax(dim=-1)
            else:
                probabilities = torch.softmax(next_logits / temperature, dim=-1)
                next_char = torch.multinomial(probabilities, 1).squeeze(1)
            samples = torch.cat([samples, next_char.unsqueeze(0)])
        return samples
