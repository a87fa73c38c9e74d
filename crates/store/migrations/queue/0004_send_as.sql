-- The addresses (or @domains) an SMTP AUTH user may send as, besides its own.
CREATE TABLE user_send_as (
    email TEXT NOT NULL REFERENCES users(email),
    address TEXT NOT NULL,
    PRIMARY KEY (email, address)
);
