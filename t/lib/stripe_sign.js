// Signs a webhook body as Stripe does, with Stripe's own library:
//   node t/lib/stripe_sign.js SECRET TIMESTAMP < body
// prints the Stripe-Signature header's value. NODE_PATH finds the library
// (scripts/test installs t/node's packages; MONETIZE_NODE_PATH).
'use strict';

const fs = require('fs');
const stripe = require('stripe')('sk_test_unused');

const [secret, timestamp] = process.argv.slice(2);
const payload = fs.readFileSync(0, 'utf8');

process.stdout.write(stripe.webhooks.generateTestHeaderString({
    payload,
    secret,
    timestamp: Number(timestamp),
}));
