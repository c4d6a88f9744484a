require('http')
  .createServer((req, res) => res.end('hello from the e2e app\n'))
  .listen(process.env.PORT, '127.0.0.1');
