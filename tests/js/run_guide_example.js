// Runs guide_example.js as a browser page would: a global WebSocket and the page's UI callbacks.
// Usage: USER_ID=… PORT=… TOKEN=… node run_guide_example.js
const fs = require('fs');
const path = require('path');
const vm = require('vm');

globalThis.WebSocket = require('ws');
globalThis.userId = process.env.USER_ID;
globalThis.port = process.env.PORT;
globalThis.token = process.env.TOKEN;
globalThis.showNotification = (data) => console.log(`[ui] notification ${data.id}`);
globalThis.showTypingIndicator = (userId) => console.log(`[ui] typing ${userId}`);
globalThis.updateChatUI = (chat) => console.log(`[ui] chat ${chat.id} unread=${chat.unread_count}`);

vm.runInThisContext(fs.readFileSync(path.join(__dirname, 'guide_example.js'), 'utf8'), { filename: 'guide_example.js' });
