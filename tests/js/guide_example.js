// The JavaScript example of the original WebSocket guide, verbatim except for the URL (port and ?token=).
// run_guide_example.js provides `userId`, `port`, `token` and the UI callbacks the example calls.
const ws = new WebSocket(`ws://localhost:${port}/websocket/ws/${userId}?token=${token}`);

// Получение всех уведомлений
ws.onmessage = function(event) {
    const message = JSON.parse(event.data);
    
    switch(message.type) {
        case 'new_message':
            // Новое сообщение из ЛЮБОГО чата
            console.log(`📨 Сообщение в чате ${message.data.chat_id}`);
            console.log(`От: ${message.data.sender.email}`);
            console.log(`Текст: ${message.data.content}`);
            showNotification(message.data);
            break;
            
        case 'user_typing':
            showTypingIndicator(message.data.user_id);
            break;
            
        case 'my_chats':
            // Список всех твоих чатов с количеством непрочитанных
            message.data.chats.forEach(chat => {
                updateChatUI(chat);
            });
            break;
    }
};

// При подключении автоматически получаем список чатов
ws.onopen = function() {
    console.log('🚀 Подключен! Автоматически подписан на все чаты');
    
    // Получаем актуальный список чатов
    setTimeout(() => {
        ws.send(JSON.stringify({
            type: 'get_my_chats',
            data: {}
        }));
    }, 1000);
};
